# Mamba-1 kernels: selective scan (prefill) and the decode state update.
mambaserve_library(ms_kernels_mamba1
  SOURCES selective_scan.cc selective_scan_cpu.cc mamba1_state_update.cc
          mamba1_state_update_cpu.cc
  CUDA_SOURCES selective_scan.cu mamba1_state_update.cu
  DEPS ms_core ms_kernels_math)
target_link_libraries(ms_kernels INTERFACE ms_kernels_mamba1)

if(MAMBASERVE_BUILD_TESTS)
  mambaserve_cc_test(selective_scan_test SOURCES selective_scan_test.cc DEPS ms_kernels_mamba1)
  mambaserve_cc_test(mamba1_state_update_test SOURCES mamba1_state_update_test.cc
                     DEPS ms_kernels_mamba1)
  mambaserve_cc_test(mamba1_gpu_test SOURCES mamba1_gpu_test.cc DEPS ms_kernels_mamba1
                     LABELS gpu)
endif()

