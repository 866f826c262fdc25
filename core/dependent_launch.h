// Programmatic dependent launch (compute capability 9.0+). A kernel launched as a dependent may
// start while the kernel before it on the stream still runs, once every block of that kernel has
// signalled (griddepcontrol.launch_dependents; without a signal, when it ends). It must wait
// (griddepcontrol.wait) before it reads or writes memory that earlier kernels use: after the wait
// the previous kernel has finished and its writes are visible, and since that kernel waited
// likewise, so have all before it. Until then it may only load constants (weights), or memory
// its caller knows no earlier kernel on the stream can still be writing (the decode state
// kernels' read_state_before_wait, which the model's step sets). Decode at batch 1 is a chain of
// short kernels, so hiding each launch and first load behind its predecessor matters
// (bench/RESULTS.md). The device side is core/dependent_launch.cuh.
#ifndef MAMBASERVE_CORE_DEPENDENT_LAUNCH_H_
#define MAMBASERVE_CORE_DEPENDENT_LAUNCH_H_

namespace mambaserve {

// True on a 9.0+ GPU unless switched off.
bool DependentLaunchEnabled();
// Benchmarks compare with and without; CUDA graphs captured before keep the old setting.
void SetDependentLaunch(bool on);

}  // namespace mambaserve

#endif  // MAMBASERVE_CORE_DEPENDENT_LAUNCH_H_
