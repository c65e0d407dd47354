"""Custom operators: the fused DEE dilated convolution and the native code behind it."""
