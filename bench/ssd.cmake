# bench_ssd_prefill: the fused SSD chunked scan on a Mamba2-2.7B layer (CUDA only).
if(MAMBASERVE_HAS_CUDA)
  add_executable(bench_ssd_prefill bench_ssd_prefill.cu)
  target_link_libraries(bench_ssd_prefill PRIVATE ms_kernels_ssd)
endif()
