#include "layers/weight_source.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"

namespace mambaserve {

absl::StatusOr<std::unique_ptr<CheckpointWeights>> CheckpointWeights::Open(const std::string& dir) {
  ASSIGN_OR_RETURN(SafetensorsCheckpoint c, SafetensorsCheckpoint::Open(dir));
  return std::unique_ptr<CheckpointWeights>(new CheckpointWeights(std::move(c)));
}

absl::StatusOr<std::vector<int64_t>> CheckpointWeights::Shape(const std::string& name) const {
  ASSIGN_OR_RETURN(const SafetensorInfo* info, ckpt_.Find(name));
  return info->shape;
}

absl::Status CheckpointWeights::Read(const std::string& name, const std::vector<DimRange>& ranges,
                                     std::vector<float>* out) const {
  return ckpt_.ReadAsFloat(name, ranges, out);
}

namespace {

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t HashName(const std::string& s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

RandomWeights::RandomWeights(const config::ModelConfig& m, uint64_t seed) : seed_(seed) {
  const int64_t dm = m.d_model(), di = m.d_inner(), n = m.d_state(), w = m.d_conv();
  shapes_["backbone.embeddings.weight"] = {m.vocab_size(), dm};
  shapes_["backbone.norm_f.weight"] = {dm};
  if (!m.tie_embeddings()) shapes_["lm_head.weight"] = {m.vocab_size(), dm};
  for (int64_t l = 0; l < m.n_layers(); ++l) {
    const std::string p = absl::StrCat("backbone.layers.", l, ".");
    shapes_[p + "norm.weight"] = {dm};
    const std::string x = p + "mixer.";
    if (m.architecture() == config::MAMBA1) {
      shapes_[x + "in_proj.weight"] = {2 * di, dm};
      shapes_[x + "conv1d.weight"] = {di, 1, w};
      if (m.conv_bias()) shapes_[x + "conv1d.bias"] = {di};
      shapes_[x + "x_proj.weight"] = {m.dt_rank() + 2 * n, di};
      shapes_[x + "dt_proj.weight"] = {di, m.dt_rank()};
      shapes_[x + "dt_proj.bias"] = {di};
      shapes_[x + "A_log"] = {di, n};
      shapes_[x + "D"] = {di};
      shapes_[x + "out_proj.weight"] = {dm, di};
    } else {
      const int64_t h = m.num_heads(), g = m.n_groups();
      shapes_[x + "in_proj.weight"] = {2 * di + 2 * g * n + h, dm};
      shapes_[x + "conv1d.weight"] = {di + 2 * g * n, 1, w};
      if (m.conv_bias()) shapes_[x + "conv1d.bias"] = {di + 2 * g * n};
      shapes_[x + "dt_bias"] = {h};
      shapes_[x + "A_log"] = {h};
      shapes_[x + "D"] = {h};
      shapes_[x + "norm.weight"] = {di};
      shapes_[x + "out_proj.weight"] = {dm, di};
    }
  }
}

absl::StatusOr<std::vector<int64_t>> RandomWeights::Shape(const std::string& name) const {
  auto it = shapes_.find(name);
  if (it == shapes_.end())
    return absl::NotFoundError(absl::StrCat("no random tensor '", name, "'"));
  return it->second;
}

absl::Status RandomWeights::Read(const std::string& name, const std::vector<DimRange>& ranges,
                                 std::vector<float>* out) const {
  ASSIGN_OR_RETURN(std::vector<int64_t> shape, Shape(name));
  std::vector<DimRange> r = ranges;
  if (r.empty()) {
    for (int64_t d : shape) r.push_back({0, d});
  }
  MS_CHECK_ARG(r.size() == shape.size(), "random tensor '", name, "': rank mismatch");
  int64_t count = 1;
  for (size_t d = 0; d < r.size(); ++d) {
    MS_CHECK_ARG(r[d].begin >= 0 && r[d].size >= 0 && r[d].begin + r[d].size <= shape[d],
                 "random tensor '", name, "': slice outside dim ", d);
    count *= r[d].size;
  }
  // Fan-in of a linear weight (the last dimension) sets its scale. The tensor's kind is decided
  // once, not per element (a 2.7B-parameter model has billions of elements).
  enum class Kind { kALog, kDtBias, kNorm, kD, kConvBias, kLinear };
  Kind kind = Kind::kLinear;
  if (EndsWith(name, "A_log")) {
    kind = Kind::kALog;
  } else if (EndsWith(name, "dt_bias") || EndsWith(name, "dt_proj.bias")) {
    kind = Kind::kDtBias;
  } else if (EndsWith(name, "norm.weight") || EndsWith(name, "norm_f.weight")) {
    kind = Kind::kNorm;
  } else if (EndsWith(name, ".D")) {
    kind = Kind::kD;
  } else if (EndsWith(name, "conv1d.bias")) {
    kind = Kind::kConvBias;
  }
  const double scale = 1.0 / std::sqrt(static_cast<double>(shape.back()));
  const uint64_t base = SplitMix(seed_ ^ HashName(name));
  auto value = [&](int64_t flat) -> float {
    const double u =
        (SplitMix(base + static_cast<uint64_t>(flat)) >> 11) * (1.0 / 9007199254740992.0);
    switch (kind) {
      case Kind::kALog:
        return static_cast<float>(std::log(1.0 + 15.0 * u));
      case Kind::kDtBias: {
        const double dt = std::exp(std::log(1e-3) + u * (std::log(0.1) - std::log(1e-3)));
        return static_cast<float>(dt + std::log(-std::expm1(-dt)));  // inverse softplus
      }
      case Kind::kNorm:
        return static_cast<float>(0.9 + 0.2 * u);
      case Kind::kD:
        return static_cast<float>(0.5 + u);
      case Kind::kConvBias:
        return static_cast<float>(0.2 * (u - 0.5));
      case Kind::kLinear:
        break;
    }
    return static_cast<float>((2.0 * u - 1.0) * scale);
  };
  out->resize(static_cast<size_t>(count));
  std::vector<int64_t> idx(r.size(), 0);
  for (int64_t o = 0; o < count; ++o) {
    int64_t flat = 0;
    for (size_t d = 0; d < r.size(); ++d) flat = flat * shape[d] + r[d].begin + idx[d];
    (*out)[static_cast<size_t>(o)] = value(flat);
    for (int d = static_cast<int>(r.size()) - 1; d >= 0; --d) {
      if (++idx[d] < r[d].size) break;
      idx[d] = 0;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ResolveWeightName(const WeightSource& src,
                                              const std::vector<std::string>& candidates) {
  for (const auto& c : candidates) {
    if (src.Has(c)) return c;
  }
  return absl::NotFoundError(
      absl::StrCat("checkpoint has none of: ", absl::StrJoin(candidates, ", ")));
}

absl::Status ExpectShape(const WeightSource& src, const std::string& name,
                         const std::vector<int64_t>& dims) {
  ASSIGN_OR_RETURN(std::vector<int64_t> shape, src.Shape(name));
  if (shape != dims) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", name, "' has shape [", absl::StrJoin(shape, ", "),
                     "] but the model config implies [", absl::StrJoin(dims, ", "), "]"));
  }
  return absl::OkStatus();
}

absl::Status ReadRows(const WeightSource& src, const std::string& name,
                      const std::vector<IndexRange>& rows, std::vector<float>* out) {
  ASSIGN_OR_RETURN(std::vector<int64_t> shape, src.Shape(name));
  MS_CHECK_ARG(!shape.empty(), "tensor '", name, "' is a scalar");
  out->clear();
  std::vector<float> piece;
  for (const auto& r : rows) {
    if (r.size == 0) continue;
    std::vector<DimRange> ranges{{r.begin, r.size}};
    for (size_t d = 1; d < shape.size(); ++d) ranges.push_back({0, shape[d]});
    RETURN_IF_ERROR(src.Read(name, ranges, &piece));
    out->insert(out->end(), piece.begin(), piece.end());
  }
  return absl::OkStatus();
}

absl::Status ReadCols(const WeightSource& src, const std::string& name,
                      const std::vector<IndexRange>& cols, std::vector<float>* out) {
  ASSIGN_OR_RETURN(std::vector<int64_t> shape, src.Shape(name));
  MS_CHECK_ARG(shape.size() == 2, "tensor '", name, "' must be 2-D for a column slice");
  const int64_t total = TotalSize(cols);
  out->assign(static_cast<size_t>(shape[0] * total), 0.0f);
  std::vector<float> piece;
  int64_t col0 = 0;
  for (const auto& c : cols) {
    if (c.size == 0) continue;
    RETURN_IF_ERROR(src.Read(name, {{0, shape[0]}, {c.begin, c.size}}, &piece));
    for (int64_t r = 0; r < shape[0]; ++r) {
      for (int64_t j = 0; j < c.size; ++j) {
        (*out)[static_cast<size_t>(r * total + col0 + j)] =
            piece[static_cast<size_t>(r * c.size + j)];
      }
    }
    col0 += c.size;
  }
  return absl::OkStatus();
}

}  // namespace mambaserve
