# The paged state pool, block allocator, copy specs (CPU + one batched CUDA kernel), prefix cache
# and per-sequence state bookkeeping.
mambaserve_library(ms_state_manager
  SOURCES state_pool.cc block_allocator.cc copy_spec.cc prefix_cache.cc sequence_states.cc
  CUDA_SOURCES copy_spec.cu
  DEPS ms_state_shapes ms_core absl::flat_hash_map)

if(MAMBASERVE_BUILD_TESTS)
  mambaserve_cc_test(state_manager_test
    SOURCES block_allocator_test.cc state_pool_test.cc copy_spec_test.cc prefix_cache_test.cc
            toy_recompute_test.cc
    DEPS ms_state_manager)
  mambaserve_cc_test(state_manager_gpu_test
    SOURCES copy_spec_gpu_test.cc
    DEPS ms_state_manager)
endif()
