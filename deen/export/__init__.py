"""Building deployable artifacts from DEEN and verifying each against PyTorch.

    base.py             the exporter contract: ExportSettings in, ExportResult out
    onnx_export.py      ONNX (standard operators, or the fused DeeConv node)
    quantize.py         ONNX int8 (QDQ) with ONNX Runtime's tools, for ONNX Runtime and TensorRT
    openvino_export.py  OpenVINO IR (fp32, bf16, int8 by NNCF)
    tensorrt_build.py   TensorRT engines from the ONNX export
    triton.py           a Triton model repository
    calibration.py      int8 calibration crops of both modalities
    verify.py, compare.py  the comparison of a candidate backend with PyTorch

Which engines exist, their precisions and their tolerances is :mod:`deen.formats`' table;
each engine module provides the ``export(model, out, settings)`` its row names. Running
artifacts is :mod:`deen.backends`' job; this package uses it and is not used by it.
"""
