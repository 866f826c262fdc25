# One sharded Mamba-2 layer: prefill/decode time at tp = the rank count (mpirun -np N).
add_executable(bench_tp_layer bench_tp_layer.cc)
target_link_libraries(bench_tp_layer PRIVATE ms_layers)
