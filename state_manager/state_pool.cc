#include "state_manager/state_pool.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace mambaserve {
namespace {

constexpr int64_t kRegionAlign = 256;

int64_t AlignUp(int64_t x, int64_t a) { return (x + a - 1) / a * a; }

absl::Status CheckConfig(const StatePoolConfig& c) {
  MS_CHECK_ARG(c.num_layers >= 1, "state pool needs at least one layer, got ", c.num_layers);
  MS_CHECK_ARG(!c.shapes.empty(), "state pool needs at least one state tensor per layer");
  for (const auto& s : c.shapes) {
    MS_CHECK_ARG(!s.dims.empty(), "state tensor '", s.name, "' has no dims");
    for (int64_t d : s.dims) MS_CHECK_ARG(d >= 1, "state tensor '", s.name, "' has a dim ", d);
    MS_CHECK_ARG(static_cast<int>(s.dims.size()) + 1 <= kMaxRank, "state tensor '", s.name,
                 "' has too many dims");
  }
  return absl::OkStatus();
}

}  // namespace

int64_t StatePool::BytesPerBlock(const StatePoolConfig& config) {
  int64_t per_layer = 0;
  for (const auto& s : config.shapes) per_layer += s.nbytes();
  return per_layer * config.num_layers;
}

std::vector<int64_t> StatePool::RegionOffsets(const StatePoolConfig& config, int64_t num_blocks,
                                              int64_t* total_bytes) {
  std::vector<int64_t> offsets;
  int64_t off = 0;
  for (int64_t l = 0; l < config.num_layers; ++l) {
    for (const auto& s : config.shapes) {
      offsets.push_back(off);
      off = AlignUp(off + num_blocks * s.nbytes(), kRegionAlign);
    }
  }
  *total_bytes = off;
  return offsets;
}

absl::StatusOr<int64_t> StatePool::BlocksForBudget(const StatePoolConfig& config,
                                                   int64_t budget_bytes) {
  RETURN_IF_ERROR(CheckConfig(config));
  const int64_t per_block = BytesPerBlock(config);
  int64_t lo = 0, hi = budget_bytes > 0 ? budget_bytes / per_block : 0;
  // Largest n in [0, hi] whose padded size fits (size is monotone in n).
  while (lo < hi) {
    int64_t mid = lo + (hi - lo + 1) / 2;
    int64_t total = 0;
    RegionOffsets(config, mid, &total);
    if (total <= budget_bytes) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  if (lo < 2) {
    return absl::ResourceExhaustedError(
        absl::StrCat("state memory budget of ", budget_bytes, " bytes holds ", lo, " blocks of ",
                     per_block, " bytes; at least 2 (the null block and one more) are needed"));
  }
  return lo;
}

absl::StatusOr<StatePool> StatePool::Create(const StatePoolConfig& config, int64_t num_blocks) {
  RETURN_IF_ERROR(CheckConfig(config));
  MS_CHECK_ARG(num_blocks >= 2, "state pool needs at least 2 blocks, got ", num_blocks);
  StatePool p;
  p.config_ = config;
  p.num_blocks_ = num_blocks;
  int64_t total = 0;
  p.offsets_ = RegionOffsets(config, num_blocks, &total);
  ASSIGN_OR_RETURN(p.buffer_, Buffer::Allocate(config.device, total));
  RETURN_IF_ERROR(ZeroBytes(p.buffer_.data(), config.device, total));
  return p;
}

absl::StatusOr<StatePool> StatePool::CreateForBudget(const StatePoolConfig& config,
                                                     int64_t budget_bytes) {
  ASSIGN_OR_RETURN(int64_t n, BlocksForBudget(config, budget_bytes));
  return Create(config, n);
}

absl::Status StatePool::CheckLayerTensor(int64_t layer, int64_t tensor) const {
  if (layer < 0 || layer >= num_layers()) {
    return absl::OutOfRangeError(
        absl::StrCat("layer ", layer, " out of range [0, ", num_layers(), ")"));
  }
  if (tensor < 0 || tensor >= num_tensors()) {
    return absl::OutOfRangeError(
        absl::StrCat("state tensor ", tensor, " out of range [0, ", num_tensors(), ")"));
  }
  return absl::OkStatus();
}

absl::Status StatePool::CheckBlock(int64_t block) const {
  if (block < 0 || block >= num_blocks_) {
    return absl::OutOfRangeError(
        absl::StrCat("block ", block, " out of range [0, ", num_blocks_, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<StateTensorRef> StatePool::Ref(int64_t layer, int64_t tensor) const {
  RETURN_IF_ERROR(CheckLayerTensor(layer, tensor));
  const auto& s = config_.shapes[tensor];
  StateTensorRef r;
  r.base = static_cast<char*>(buffer_.data()) + offsets_[layer * num_tensors() + tensor];
  r.block_stride = s.numel();
  r.num_blocks = num_blocks_;
  r.dtype = s.dtype;
  return r;
}

absl::StatusOr<TensorView> StatePool::Tensor(int64_t layer, int64_t tensor) const {
  ASSIGN_OR_RETURN(StateTensorRef r, Ref(layer, tensor));
  const auto& s = config_.shapes[tensor];
  int64_t shape[kMaxRank];
  shape[0] = num_blocks_;
  for (size_t i = 0; i < s.dims.size(); ++i) shape[i + 1] = s.dims[i];
  return TensorView(r.base, s.dtype, config_.device, shape, static_cast<int>(s.dims.size()) + 1);
}

absl::StatusOr<void*> StatePool::BlockAddress(int64_t layer, int64_t tensor, int64_t block) const {
  RETURN_IF_ERROR(CheckBlock(block));
  ASSIGN_OR_RETURN(StateTensorRef r, Ref(layer, tensor));
  return static_cast<void*>(static_cast<char*>(r.base) +
                            block * r.block_stride * DTypeSize(r.dtype));
}

absl::Status StatePool::ZeroBlock(int64_t block, const Stream* stream) {
  RETURN_IF_ERROR(CheckBlock(block));
  for (int64_t l = 0; l < num_layers(); ++l) {
    for (int64_t t = 0; t < num_tensors(); ++t) {
      ASSIGN_OR_RETURN(void* p, BlockAddress(l, t, block));
      RETURN_IF_ERROR(ZeroBytes(p, config_.device, config_.shapes[t].nbytes(), stream));
    }
  }
  return absl::OkStatus();
}

absl::Status StatePool::ReadBlock(int64_t layer, int64_t block,
                                  BlockState::LayerValues* out) const {
  MS_CHECK_ARG(out != nullptr, "ReadBlock: null output");
  RETURN_IF_ERROR(CheckBlock(block));
  out->assign(static_cast<size_t>(num_tensors()), {});
  for (int64_t t = 0; t < num_tensors(); ++t) {
    const auto& s = config_.shapes[t];
    ASSIGN_OR_RETURN(void* p, BlockAddress(layer, t, block));
    std::vector<char> host(static_cast<size_t>(s.nbytes()));
    RETURN_IF_ERROR(CopyBytes(host.data(), Device::Cpu(), p, config_.device, s.nbytes()));
    auto& v = (*out)[t];
    v.resize(static_cast<size_t>(s.numel()));
    for (int64_t i = 0; i < s.numel(); ++i) v[i] = LoadAsFloat(host.data(), s.dtype, i);
  }
  return absl::OkStatus();
}

absl::Status StatePool::WriteBlock(int64_t layer, int64_t block,
                                   const BlockState::LayerValues& values) {
  RETURN_IF_ERROR(CheckBlock(block));
  MS_CHECK_ARG(block != 0, "block 0 is the null block and must stay zero");
  MS_CHECK_ARG(static_cast<int64_t>(values.size()) == num_tensors(), "WriteBlock: got ",
               values.size(), " arrays for ", num_tensors(), " state tensors");
  RETURN_IF_ERROR(CheckLayerTensor(layer, 0));
  for (int64_t t = 0; t < num_tensors(); ++t) {
    const auto& s = config_.shapes[t];
    MS_CHECK_ARG(static_cast<int64_t>(values[t].size()) == s.numel(), "WriteBlock: tensor '",
                 s.name, "' needs ", s.numel(), " values, got ", values[t].size());
  }
  for (int64_t t = 0; t < num_tensors(); ++t) {
    const auto& s = config_.shapes[t];
    std::vector<char> host(static_cast<size_t>(s.nbytes()));
    for (int64_t i = 0; i < s.numel(); ++i) StoreFromFloat(host.data(), s.dtype, i, values[t][i]);
    ASSIGN_OR_RETURN(void* p, BlockAddress(layer, t, block));
    RETURN_IF_ERROR(CopyBytes(p, config_.device, host.data(), Device::Cpu(), s.nbytes()));
  }
  return absl::OkStatus();
}

absl::StatusOr<BlockState> StatePool::ReadBlockState(int64_t block) const {
  ASSIGN_OR_RETURN(BlockState st, BlockState::Zeros(num_layers(), config_.shapes));
  for (int64_t l = 0; l < num_layers(); ++l) {
    BlockState::LayerValues v;
    RETURN_IF_ERROR(ReadBlock(l, block, &v));
    RETURN_IF_ERROR(st.SetLayer(l, std::move(v)));
  }
  return st;
}

absl::Status StatePool::WriteBlockState(int64_t block, const BlockState& state) {
  MS_CHECK_ARG(state.num_layers() == num_layers(), "BlockState has ", state.num_layers(),
               " layers, the pool ", num_layers());
  MS_CHECK_ARG(state.shapes() == config_.shapes, "BlockState shapes differ from the pool's");
  for (int64_t l = 0; l < num_layers(); ++l) {
    ASSIGN_OR_RETURN(const BlockState::LayerValues* v, state.GetLayer(l));
    RETURN_IF_ERROR(WriteBlock(l, block, *v));
  }
  return absl::OkStatus();
}

}  // namespace mambaserve
