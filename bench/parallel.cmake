# Tensor-parallel benchmarks (parallel/).
add_executable(bench_allreduce ${CMAKE_CURRENT_LIST_DIR}/bench_allreduce.cc)
target_link_libraries(bench_allreduce PRIVATE ms_parallel)
