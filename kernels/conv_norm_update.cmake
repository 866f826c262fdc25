# Causal conv1d (prefill + decode update), gated RMSNorm, Mamba-2 state update.
mambaserve_library(ms_kernels_conv_norm_update
  SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/causal_conv1d.cc
    ${CMAKE_CURRENT_LIST_DIR}/causal_conv1d_cpu.cc
    ${CMAKE_CURRENT_LIST_DIR}/gated_rmsnorm.cc
    ${CMAKE_CURRENT_LIST_DIR}/gated_rmsnorm_cpu.cc
    ${CMAKE_CURRENT_LIST_DIR}/mamba2_state_update.cc
    ${CMAKE_CURRENT_LIST_DIR}/mamba2_state_update_cpu.cc
  CUDA_SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/causal_conv1d.cu
    ${CMAKE_CURRENT_LIST_DIR}/gated_rmsnorm.cu
    ${CMAKE_CURRENT_LIST_DIR}/mamba2_state_update.cu
  DEPS ms_core ms_kernels_math)
target_link_libraries(ms_kernels INTERFACE ms_kernels_conv_norm_update)

if(MAMBASERVE_BUILD_TESTS)
  mambaserve_cc_test(causal_conv1d_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/causal_conv1d_test.cc
    DEPS ms_kernels_conv_norm_update)
  mambaserve_cc_test(gated_rmsnorm_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/gated_rmsnorm_test.cc
    DEPS ms_kernels_conv_norm_update)
  mambaserve_cc_test(mamba2_state_update_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/mamba2_state_update_test.cc
    DEPS ms_kernels_conv_norm_update ms_kernels_math)
  mambaserve_cc_test(conv_norm_update_gpu_test
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/conv_norm_update_gpu_test.cc
    DEPS ms_kernels_conv_norm_update)
endif()
