# Whole-model decode and prefix-cache TTFT benchmarks (GPU only).
if(MAMBASERVE_HAS_CUDA)
  add_executable(bench_model bench_model.cc)
  target_link_libraries(bench_model PRIVATE ms_layers ms_state_manager)
endif()
