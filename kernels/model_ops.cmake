# Residual add + RMSNorm, embedding lookup, row copies (the model stack's small ops).
mambaserve_library(ms_kernels_model_ops
  SOURCES model_ops.cc model_ops_cpu.cc
  CUDA_SOURCES model_ops.cu
  DEPS ms_core)
target_link_libraries(ms_kernels INTERFACE ms_kernels_model_ops)

if(MAMBASERVE_BUILD_TESTS)
  mambaserve_cc_test(model_ops_test SOURCES model_ops_test.cc DEPS ms_kernels_model_ops)
endif()
