# bench_mamba1: Mamba-1 selective scan (prefill) and decode update on a Mamba-2.8B layer (CUDA only).
if(MAMBASERVE_HAS_CUDA)
  add_executable(bench_mamba1 bench_mamba1.cu)
  target_link_libraries(bench_mamba1 PRIVATE ms_kernels_mamba1)
endif()
