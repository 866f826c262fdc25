# Helpers shared by every folder's CMakeLists.txt.

set(MAMBASERVE_TEST_DATA_DIR "${PROJECT_SOURCE_DIR}/testdata")

# mambaserve_cc_test(NAME SOURCES src... DEPS lib... [RANKS n...] [LABELS l...])
# Adds a GoogleTest binary. Without RANKS it runs as one process; with RANKS it runs once per
# rank count under mpirun (the CPU communicator in CI, NCCL on a GPU machine).
function(mambaserve_cc_test name)
  cmake_parse_arguments(T "" "" "SOURCES;DEPS;RANKS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_DEPS} GTest::gtest GTest::gtest_main)
  target_compile_definitions(${name} PRIVATE
    MAMBASERVE_TEST_DATA_DIR="${MAMBASERVE_TEST_DATA_DIR}")
  if(NOT T_RANKS)
    add_test(NAME ${name} COMMAND ${name})
    set_tests_properties(${name} PROPERTIES LABELS "unit;${T_LABELS}" TIMEOUT 600)
  else()
    foreach(n IN LISTS T_RANKS)
      add_test(NAME ${name}_np${n}
               COMMAND ${MPIEXEC_EXECUTABLE} -np ${n} --oversubscribe --allow-run-as-root
                       --bind-to none $<TARGET_FILE:${name}>)
      set_tests_properties(${name}_np${n} PROPERTIES LABELS "mpi;${T_LABELS}" TIMEOUT 600
                           PROCESSORS ${n}
                           ENVIRONMENT "OMPI_MCA_rmaps_base_oversubscribe=1;OMPI_MCA_btl=self,vader")
    endforeach()
  endif()
endfunction()

# mambaserve_library(NAME SOURCES src... CUDA_SOURCES src... DEPS lib...)
# A static library (shared with -DMAMBASERVE_SHARED_LIBS=ON, which keeps the GPU machine's bundle
# small: every program links the same kernels); CUDA sources are added only when the CUDA backend
# is on.
function(mambaserve_library name)
  cmake_parse_arguments(L "" "" "SOURCES;CUDA_SOURCES;DEPS" ${ARGN})
  set(srcs ${L_SOURCES})
  if(MAMBASERVE_HAS_CUDA)
    list(APPEND srcs ${L_CUDA_SOURCES})
  endif()
  if(MAMBASERVE_SHARED_LIBS)
    add_library(${name} SHARED ${srcs})
  else()
    add_library(${name} STATIC ${srcs})
  endif()
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  target_link_libraries(${name} PUBLIC ${L_DEPS})
  if(MAMBASERVE_HAS_CUDA)
    target_compile_definitions(${name} PUBLIC MAMBASERVE_HAS_CUDA=1)
    target_link_libraries(${name} PUBLIC CUDA::cudart)
    set_target_properties(${name} PROPERTIES CUDA_SEPARABLE_COMPILATION OFF)
  endif()
endfunction()
