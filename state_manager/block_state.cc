#include "state_manager/block_state.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/random.h"

namespace mambaserve {

absl::StatusOr<BlockState> BlockState::Zeros(int64_t num_layers, const LayerStateShapes& shapes) {
  if (num_layers <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_layers must be positive, got ", num_layers));
  }
  if (shapes.empty()) return absl::InvalidArgumentError("a layer needs at least one state tensor");
  BlockState s;
  s.shapes_ = shapes;
  LayerValues zeros;
  for (const auto& t : shapes) zeros.emplace_back(static_cast<size_t>(t.numel()), 0.0f);
  s.layers_.assign(static_cast<size_t>(num_layers), zeros);
  return s;
}

absl::Status BlockState::CheckLayer(int64_t layer) const {
  if (layer < 0 || layer >= num_layers()) {
    return absl::OutOfRangeError(
        absl::StrCat("layer ", layer, " is outside [0, ", num_layers(), ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<const BlockState::LayerValues*> BlockState::GetLayer(int64_t layer) const {
  if (auto st = CheckLayer(layer); !st.ok()) return st;
  return &layers_[static_cast<size_t>(layer)];
}

absl::Status BlockState::SetLayer(int64_t layer, LayerValues values) {
  if (auto st = CheckLayer(layer); !st.ok()) return st;
  if (values.size() != shapes_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("layer ", layer, ": got ", values.size(),
                                                   " state tensors, expected ", shapes_.size()));
  }
  for (size_t i = 0; i < values.size(); ++i) {
    if (static_cast<int64_t>(values[i].size()) != shapes_[i].numel()) {
      return absl::InvalidArgumentError(absl::StrCat("layer ", layer, " state '", shapes_[i].name,
                                                     "': got ", values[i].size(),
                                                     " values, expected ", shapes_[i].numel()));
    }
    RoundTo(shapes_[i].dtype, values[i]);
  }
  layers_[static_cast<size_t>(layer)] = std::move(values);
  return absl::OkStatus();
}

BlockState BlockState::Clone() const { return BlockState(*this); }

}  // namespace mambaserve
