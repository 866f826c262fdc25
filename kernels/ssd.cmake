# SSD chunked scan (Mamba-2 prefill): CPU reference + fused CUDA implementation.
mambaserve_library(ms_kernels_ssd
  SOURCES ssd_chunk_scan.cc ssd_chunk_scan_cpu.cc
  CUDA_SOURCES ssd_chunk_scan.cu
  DEPS ms_core ms_kernels_math)
# CMake 3.25 knows no C++20 dialect flag for nvcc (CUDA_STANDARD 20 fails to generate), so the
# target's CUDA_STANDARD is unset and -std=c++20 is passed to nvcc directly.
if(MAMBASERVE_HAS_CUDA)
  set_property(TARGET ms_kernels_ssd PROPERTY CUDA_STANDARD)
  set_property(TARGET ms_kernels_ssd PROPERTY CUDA_STANDARD_REQUIRED OFF)
  target_compile_options(ms_kernels_ssd PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20>)
endif()
target_link_libraries(ms_kernels INTERFACE ms_kernels_ssd)

if(MAMBASERVE_BUILD_TESTS)
  mambaserve_cc_test(ssd_chunk_scan_test SOURCES ssd_chunk_scan_test.cc DEPS ms_kernels_ssd)
  mambaserve_cc_test(ssd_gpu_test SOURCES ssd_gpu_test.cc DEPS ms_kernels_ssd)
endif()
