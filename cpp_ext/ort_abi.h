// The few parts of ONNX Runtime's C ABI that the DeeConv custom op uses, declared here so the
// library builds without ONNX Runtime's headers (its Python wheel ships none).
//
// Facts from onnxruntime_c_api.h that this relies on: a custom-op library exports
//   OrtStatus* RegisterCustomOps(OrtSessionOptions*, const OrtApiBase*);
// OrtApiBase's first member is GetApi(version), which returns the OrtApi table: a struct of
// function pointers that only ever grows at its end, so a slot's index never changes. The
// OrtCustomOp struct below is its layout at API version 13; ONNX Runtime reads only the
// members that exist at the version the op declares.
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" {

struct OrtStatus;
struct OrtSessionOptions;
struct OrtCustomOpDomain;
struct OrtKernelInfo;
struct OrtKernelContext;
struct OrtValue;
struct OrtTensorTypeAndShapeInfo;
struct OrtApi;

struct OrtApiBase {
  const OrtApi* (*GetApi)(uint32_t version);
  const char* (*GetVersionString)();
};

struct OrtCustomOp {
  uint32_t version;
  void* (*CreateKernel)(const OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info);
  const char* (*GetName)(const OrtCustomOp* op);
  const char* (*GetExecutionProviderType)(const OrtCustomOp* op);
  int (*GetInputType)(const OrtCustomOp* op, size_t index);  // ONNXTensorElementDataType
  size_t (*GetInputTypeCount)(const OrtCustomOp* op);
  int (*GetOutputType)(const OrtCustomOp* op, size_t index);
  size_t (*GetOutputTypeCount)(const OrtCustomOp* op);
  void (*KernelCompute)(void* kernel, OrtKernelContext* context);
  void (*KernelDestroy)(void* kernel);
  int (*GetInputCharacteristic)(const OrtCustomOp* op, size_t index);  // 0: required
  int (*GetOutputCharacteristic)(const OrtCustomOp* op, size_t index);
  int (*GetInputMemoryType)(const OrtCustomOp* op, size_t index);  // 0: the provider's default
};

}  // extern "C"

namespace ort_abi {

constexpr uint32_t kApiVersion = 13;
constexpr int kElementFloat = 1;  // ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT
constexpr int kErrorFail = 1;     // ORT_FAIL

// Slots of the OrtApi table, with the signature each has.
enum Slot : size_t {
  kCreateStatus = 0,                    // OrtStatus* (int code, const char* message)
  kCreateCustomOpDomain = 26,           // OrtStatus* (const char*, OrtCustomOpDomain**)
  kCustomOpDomainAdd = 27,              // OrtStatus* (OrtCustomOpDomain*, const OrtCustomOp*)
  kAddCustomOpDomain = 28,              // OrtStatus* (OrtSessionOptions*, OrtCustomOpDomain*)
  kGetTensorMutableData = 51,           // OrtStatus* (OrtValue*, void**)
  kGetTensorElementType = 60,           // OrtStatus* (const OrtTensorTypeAndShapeInfo*, int*)
  kGetDimensionsCount = 61,             // OrtStatus* (const OrtTensorTypeAndShapeInfo*, size_t*)
  kGetDimensions = 62,                  // OrtStatus* (const ...Info*, int64_t*, size_t)
  kGetTensorTypeAndShape = 65,          // OrtStatus* (const OrtValue*, OrtTensorTypeAndShapeInfo**)
  kKernelContextGetInput = 90,          // OrtStatus* (const OrtKernelContext*, size_t, const OrtValue**)
  kKernelContextGetOutput = 91,         // OrtStatus* (OrtKernelContext*, size_t, const int64_t*, size_t, OrtValue**)
  kReleaseStatus = 93,                  // void (OrtStatus*)
  kReleaseTensorTypeAndShapeInfo = 99,  // void (OrtTensorTypeAndShapeInfo*)
};

// The function in ``slot`` of ``api``, as a pointer of type Fn.
template <typename Fn>
Fn slot(const OrtApi* api, Slot index) {
  return reinterpret_cast<Fn>(reinterpret_cast<void* const*>(api)[index]);
}

}  // namespace ort_abi
