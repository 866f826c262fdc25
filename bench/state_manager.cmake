# bench_copy_specs: one step's batched state copies on the Mamba2-2.7B state shape (CUDA only).
if(MAMBASERVE_HAS_CUDA)
  add_executable(bench_copy_specs ${CMAKE_CURRENT_LIST_DIR}/bench_copy_specs.cu)
  target_link_libraries(bench_copy_specs PRIVATE ms_state_manager)
  # CMake 3.25 knows no C++20 dialect flag for nvcc: pass it directly.
  set_property(TARGET bench_copy_specs PROPERTY CUDA_STANDARD)
  set_property(TARGET bench_copy_specs PROPERTY CUDA_STANDARD_REQUIRED OFF)
  target_compile_options(bench_copy_specs PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20>)
endif()
