# Decode-path kernel benchmark (Mamba-2 state update, causal conv prefill, gated RMSNorm).
if(MAMBASERVE_HAS_CUDA)
  add_executable(bench_mamba2_decode ${CMAKE_CURRENT_LIST_DIR}/bench_mamba2_decode.cc)
  target_link_libraries(bench_mamba2_decode PRIVATE ms_kernels_conv_norm_update ms_core)
endif()
