// Kernel timeline tracer, loaded with LD_PRELOAD into any CUDA program (development tool; not
// part of the build). It records every kernel's GPU start and end through CUPTI's
// concurrent-kernel activity records, which - unlike Nsight Compute, which serialises kernels -
// leave programmatic dependent launches and CUDA-graph replays overlapping as they run, and
// writes one CSV line per kernel to $KERNEL_TRACE_OUT (default kernel_trace.csv) at exit:
//   start_ns,end_ns,stream,graph_id,graph_node,correlation,grid,block,registers,name
// Build and use: scripts/kernel_trace/build.sh; analysis: scripts/kernel_trace/timeline.py.
#include <cupti.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace {

FILE* g_out = nullptr;
std::mutex g_mu;
constexpr size_t kBufferBytes = 32u << 20;

void Check(CUptiResult r, const char* what) {
  if (r == CUPTI_SUCCESS) return;
  const char* msg = nullptr;
  cuptiGetResultString(r, &msg);
  std::fprintf(stderr, "kernel_trace: %s failed: %s\n", what, msg ? msg : "?");
}

void CUPTIAPI BufferRequested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));
  *size = *buffer ? kBufferBytes : 0;
  *max_records = 0;
}

void CUPTIAPI BufferCompleted(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  std::lock_guard<std::mutex> lock(g_mu);
  CUpti_Activity* rec = nullptr;
  while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
    if (rec->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || g_out == nullptr) continue;
    const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(rec);
    std::fprintf(g_out, "%llu,%llu,%u,%u,%llu,%u,%dx%dx%d,%dx%dx%d,%u,\"%s\"\n",
                 static_cast<unsigned long long>(k->start), static_cast<unsigned long long>(k->end),
                 k->streamId, k->graphId, static_cast<unsigned long long>(k->graphNodeId),
                 k->correlationId, k->gridX, k->gridY, k->gridZ, k->blockX, k->blockY, k->blockZ,
                 k->registersPerThread, k->name ? k->name : "?");
  }
  size_t dropped = 0;
  if (cuptiActivityGetNumDroppedRecords(nullptr, 0, &dropped) == CUPTI_SUCCESS && dropped > 0) {
    std::fprintf(stderr, "kernel_trace: %zu records dropped\n", dropped);
  }
  std::free(buffer);
}

void Finish() {
  cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_out != nullptr) std::fclose(g_out);
  g_out = nullptr;
}

__attribute__((constructor)) void Start() {
  const char* path = std::getenv("KERNEL_TRACE_OUT");
  g_out = std::fopen(path ? path : "kernel_trace.csv", "w");
  if (g_out == nullptr) {
    std::perror("kernel_trace: open");
    return;
  }
  std::fprintf(g_out,
               "start_ns,end_ns,stream,graph_id,graph_node,correlation,grid,block,"
               "registers,name\n");
  Check(cuptiActivityRegisterCallbacks(BufferRequested, BufferCompleted), "register callbacks");
  Check(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL), "enable kernel records");
  // Buffers reach BufferCompleted when full or flushed; flush every 200 ms so that a program
  // whose CUDA context is torn down before our exit handler still leaves its records.
  Check(cuptiActivityFlushPeriod(200), "flush period");
  std::atexit(Finish);
}

}  // namespace
