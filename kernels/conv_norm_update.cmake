# Causal conv1d (prefill + decode update), gated RMSNorm, Mamba-2 state update.
if(MAMBASERVE_HAS_CUDA AND NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
  # CMake < 3.26 does not know nvcc's C++20 flag, so CUDA_STANDARD 20 (set at the top level)
  # fails at generate time. Teach it the flag in this directory scope.
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
endif()
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
