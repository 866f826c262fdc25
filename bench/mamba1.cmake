# bench_mamba1: Mamba-1 selective scan (prefill) and decode update on a Mamba-2.8B layer (CUDA only).
if(MAMBASERVE_HAS_CUDA)
  add_executable(bench_mamba1 bench_mamba1.cu)
  target_link_libraries(bench_mamba1 PRIVATE ms_kernels_mamba1)
  # CMake 3.25 knows no C++20 dialect flag for nvcc: pass it directly.
  set_property(TARGET bench_mamba1 PROPERTY CUDA_STANDARD)
  set_property(TARGET bench_mamba1 PROPERTY CUDA_STANDARD_REQUIRED OFF)
  target_compile_options(bench_mamba1 PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20>)
endif()
