# bench_ssd_prefill: the fused SSD chunked scan on a Mamba2-2.7B layer (CUDA only).
if(MAMBASERVE_HAS_CUDA)
  add_executable(bench_ssd_prefill bench_ssd_prefill.cu)
  target_link_libraries(bench_ssd_prefill PRIVATE ms_kernels_ssd)
  # CMake 3.25 knows no C++20 dialect flag for nvcc: pass it directly (see kernels/ssd.cmake).
  set_property(TARGET bench_ssd_prefill PROPERTY CUDA_STANDARD)
  set_property(TARGET bench_ssd_prefill PROPERTY CUDA_STANDARD_REQUIRED OFF)
  target_compile_options(bench_ssd_prefill PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20>)
endif()
