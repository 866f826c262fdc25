# bench_copy_specs: one step's batched state copies on the Mamba2-2.7B state shape (CUDA only).
if(MAMBASERVE_HAS_CUDA)
  add_executable(bench_copy_specs ${CMAKE_CURRENT_LIST_DIR}/bench_copy_specs.cu)
  target_link_libraries(bench_copy_specs PRIVATE ms_state_manager)
endif()
