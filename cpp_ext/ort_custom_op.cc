// ONNX Runtime custom op "DeeConv" (domain "deen.ops"): runs the fused DEE convolution of
// dee_conv.h on ONNX Runtime's CPU provider with the kernel of dee_conv_cpu.cc.
// Load with SessionOptions.register_custom_ops_library(path to libdeen_ops.so).
#include <stdexcept>
#include <string>
#include <vector>

#include "dee_conv.h"
#include "ort_abi.h"

namespace {

using ort_abi::slot;

const OrtApi* g_api = nullptr;

// Throws on an error status: ONNX Runtime turns an exception from KernelCompute into a
// failed run carrying the message.
void check(OrtStatus* status) {
  if (status == nullptr) return;
  slot<void (*)(OrtStatus*)>(g_api, ort_abi::kReleaseStatus)(status);
  throw std::runtime_error("DeeConv: an ONNX Runtime call failed");
}

std::vector<int64_t> shape_of(const OrtValue* value) {
  OrtTensorTypeAndShapeInfo* info = nullptr;
  check(slot<OrtStatus* (*)(const OrtValue*, OrtTensorTypeAndShapeInfo**)>(
      g_api, ort_abi::kGetTensorTypeAndShape)(value, &info));
  size_t rank = 0;
  int type = 0;
  OrtStatus* status = slot<OrtStatus* (*)(const OrtTensorTypeAndShapeInfo*, size_t*)>(
      g_api, ort_abi::kGetDimensionsCount)(info, &rank);
  std::vector<int64_t> dims(rank);
  if (status == nullptr)
    status = slot<OrtStatus* (*)(const OrtTensorTypeAndShapeInfo*, int64_t*, size_t)>(
        g_api, ort_abi::kGetDimensions)(info, dims.data(), rank);
  if (status == nullptr)
    status = slot<OrtStatus* (*)(const OrtTensorTypeAndShapeInfo*, int*)>(
        g_api, ort_abi::kGetTensorElementType)(info, &type);
  slot<void (*)(OrtTensorTypeAndShapeInfo*)>(g_api, ort_abi::kReleaseTensorTypeAndShapeInfo)(info);
  check(status);
  if (type != ort_abi::kElementFloat) throw std::runtime_error("DeeConv: inputs must be float32");
  return dims;
}

void* data_of(const OrtValue* value) {
  void* data = nullptr;
  check(slot<OrtStatus* (*)(OrtValue*, void**)>(g_api, ort_abi::kGetTensorMutableData)(
      const_cast<OrtValue*>(value), &data));
  return data;
}

void compute(void* /*kernel*/, OrtKernelContext* context) {
  auto get_input = slot<OrtStatus* (*)(const OrtKernelContext*, size_t, const OrtValue**)>(
      g_api, ort_abi::kKernelContextGetInput);
  const OrtValue* x = nullptr;
  const OrtValue* weight = nullptr;
  check(get_input(context, 0, &x));
  check(get_input(context, 1, &weight));
  const std::vector<int64_t> xs = shape_of(x), ws = shape_of(weight);
  if (xs.size() != 4 || ws.size() != 3 || ws[0] != deen::kDeeTaps || ws[1] != xs[1])
    throw std::runtime_error("DeeConv: expected x N x C x H x W and weight 25 x C x O");
  const int64_t out_dims[4] = {xs[0], ws[2], xs[2], xs[3]};
  OrtValue* y = nullptr;
  check(slot<OrtStatus* (*)(OrtKernelContext*, size_t, const int64_t*, size_t, OrtValue**)>(
      g_api, ort_abi::kKernelContextGetOutput)(context, 0, out_dims, 4, &y));
  if (deen_dee_conv_f32(static_cast<const float*>(data_of(x)),
                        static_cast<const float*>(data_of(weight)),
                        static_cast<float*>(data_of(y)), xs[0], xs[1], xs[2], xs[3], ws[2],
                        0) != 0)
    throw std::runtime_error("DeeConv: bad shapes");
}

OrtCustomOp make_op() {
  OrtCustomOp op{};
  op.version = ort_abi::kApiVersion;
  op.CreateKernel = [](const OrtCustomOp*, const OrtApi*, const OrtKernelInfo*) -> void* {
    return &g_api;  // stateless: any non-null handle
  };
  op.GetName = [](const OrtCustomOp*) { return "DeeConv"; };
  op.GetExecutionProviderType = [](const OrtCustomOp*) -> const char* { return nullptr; };
  op.GetInputType = [](const OrtCustomOp*, size_t) { return ort_abi::kElementFloat; };
  op.GetInputTypeCount = [](const OrtCustomOp*) -> size_t { return 2; };
  op.GetOutputType = [](const OrtCustomOp*, size_t) { return ort_abi::kElementFloat; };
  op.GetOutputTypeCount = [](const OrtCustomOp*) -> size_t { return 1; };
  op.KernelCompute = compute;
  op.KernelDestroy = [](void*) {};
  op.GetInputCharacteristic = [](const OrtCustomOp*, size_t) { return 0; };
  op.GetOutputCharacteristic = [](const OrtCustomOp*, size_t) { return 0; };
  op.GetInputMemoryType = [](const OrtCustomOp*, size_t) { return 0; };
  return op;
}

const OrtCustomOp g_dee_conv = make_op();

}  // namespace

extern "C" __attribute__((visibility("default"))) OrtStatus* RegisterCustomOps(
    OrtSessionOptions* options, const OrtApiBase* base) {
  g_api = base->GetApi(ort_abi::kApiVersion);
  if (g_api == nullptr) return nullptr;  // cannot even report: ONNX Runtime older than 1.13
  OrtCustomOpDomain* domain = nullptr;
  OrtStatus* status = slot<OrtStatus* (*)(const char*, OrtCustomOpDomain**)>(
      g_api, ort_abi::kCreateCustomOpDomain)("deen.ops", &domain);
  if (status == nullptr)
    status = slot<OrtStatus* (*)(OrtCustomOpDomain*, const OrtCustomOp*)>(
        g_api, ort_abi::kCustomOpDomainAdd)(domain, &g_dee_conv);
  if (status == nullptr)
    status = slot<OrtStatus* (*)(OrtSessionOptions*, OrtCustomOpDomain*)>(
        g_api, ort_abi::kAddCustomOpDomain)(options, domain);
  return status;  // the domain lives as long as the process: sessions may outlive options
}
