# SSD chunked scan (Mamba-2 prefill): CPU reference + fused CUDA implementation.
mambaserve_library(ms_kernels_ssd
  SOURCES ssd_chunk_scan.cc ssd_chunk_scan_cpu.cc
  CUDA_SOURCES ssd_chunk_scan.cu
  DEPS ms_core ms_kernels_math)
target_link_libraries(ms_kernels INTERFACE ms_kernels_ssd)

if(MAMBASERVE_BUILD_TESTS)
  mambaserve_cc_test(ssd_chunk_scan_test SOURCES ssd_chunk_scan_test.cc DEPS ms_kernels_ssd)
  mambaserve_cc_test(ssd_gpu_test SOURCES ssd_gpu_test.cc DEPS ms_kernels_ssd)
endif()
