# Whole-model decode and prefix-cache TTFT benchmarks (GPU only).
if(MAMBASERVE_HAS_CUDA)
  add_executable(bench_model bench_model.cc)
  target_link_libraries(bench_model PRIVATE ms_layers ms_state_manager)
endif()

# Decode-shape GEMMs: cublasGemmEx's default, every cuBLASLt heuristic algorithm, and the
# one-row GEMV Linear uses at batch 1.
if(MAMBASERVE_HAS_CUDA)
  add_executable(bench_gemm_algos bench_gemm_algos.cc)
  target_include_directories(bench_gemm_algos PRIVATE ${PROJECT_SOURCE_DIR})
  target_link_libraries(bench_gemm_algos PRIVATE ms_layers CUDA::cublas CUDA::cublasLt CUDA::cudart)
endif()
