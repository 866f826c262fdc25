// Stand-in (our own code, not PyTorch's) for the bits of c10/macros the shimmed types need.
// Only for building mamba_ssm's selective-scan kernel without PyTorch; see ../../README.md.
#pragma once

#if defined(__CUDACC__)
#define SHIM_C10_HD __host__ __device__
#else
#define SHIM_C10_HD
#endif
