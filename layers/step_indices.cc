#include "layers/step_indices.h"

#include <algorithm>
#include <cstring>

#include "layers/mamba_model.h"

namespace mambaserve {

StepIndices BuildStepIndices(const ForwardInput& in, int64_t d_conv) {
  StepIndices si;
  const int64_t S = static_cast<int64_t>(in.seq_lens.size());
  const int64_t nd = in.num_decode;
  si.num_tokens = static_cast<int64_t>(in.token_ids.size());
  si.num_decode = nd;
  si.num_prefill = S - nd;
  std::vector<int32_t>& idx = si.data;
  idx = in.token_ids;
  si.off_decode = idx.size();
  for (int64_t s = 0; s < nd; ++s) idx.push_back(in.initial_blocks[s]);
  si.off_cu = idx.size();
  idx.push_back(0);
  for (int64_t s = nd; s < S; ++s) idx.push_back(idx.back() + in.seq_lens[s]);
  si.off_init = idx.size();
  for (int64_t s = nd; s < S; ++s) idx.push_back(in.initial_blocks[s]);
  si.off_final = idx.size();
  for (int64_t s = nd; s < S; ++s) idx.push_back(in.final_blocks[s]);
  si.off_rows = idx.size();
  si.logit_rows = si.num_tokens;
  if (!in.all_logits) {
    si.logit_rows = S;
    si.select_rows = S != si.num_tokens;
    int32_t end = 0;
    for (int64_t s = 0; s < S; ++s) {
      end += in.seq_lens[s];
      idx.push_back(end - 1);
    }
  }
  // Kernel-written prefix caching: per-prefill prefix offsets, the scans' boundary lists and
  // the row indices of each boundary's conv window.
  const int64_t B = in.boundary_block_size;
  si.boundary_block_size = B;
  if (B <= 0) return si;
  const int64_t W1 = d_conv - 1;
  si.off_po32 = idx.size();
  for (int64_t s = nd; s < S; ++s) idx.push_back(in.prefix_offsets[s]);
  si.off_ssd_off = idx.size();
  idx.push_back(0);
  for (int64_t s = nd; s < S; ++s) {
    idx.push_back(idx.back() + static_cast<int32_t>(in.boundary_blocks[s].size()));
  }
  si.off_ssd_blocks = idx.size();
  for (int64_t s = nd; s < S; ++s) {
    idx.insert(idx.end(), in.boundary_blocks[s].begin(), in.boundary_blocks[s].end());
  }
  // The selective scan also counts a boundary at the chunk's end (its entry is 0: the final
  // state covers it).
  for (int64_t s = nd; s < S; ++s) {
    const int64_t po = in.prefix_offsets[s];
    si.m1_stride = std::max<int64_t>(si.m1_stride, (po + in.seq_lens[s]) / B - po / B);
  }
  si.off_m1 = idx.size();
  for (int64_t s = nd; s < S; ++s) {
    const auto& bl = in.boundary_blocks[s];
    for (int64_t j = 0; j < si.m1_stride; ++j) {
      idx.push_back(j < static_cast<int64_t>(bl.size()) ? bl[j] : 0);
    }
  }
  int64_t row0 = nd;  // first batch row of the sequence
  for (int64_t s = nd; s < S; ++s) {
    const int64_t po = in.prefix_offsets[s];
    for (size_t j = 0; j < in.boundary_blocks[s].size(); ++j) {
      const int32_t dst = in.boundary_blocks[s][j];
      if (dst == 0) continue;
      const int64_t boundary = (po / B + 1 + static_cast<int64_t>(j)) * B;
      StepIndices::Window w;
      w.dst = dst;
      w.init = in.initial_blocks[s];
      w.init_off = idx.size();
      for (int64_t r = 0; r < W1; ++r) {
        const int64_t pos = boundary - W1 + r;
        if (pos < po) {
          idx.push_back(static_cast<int32_t>(W1 - (po - pos)));
          ++w.n_init;
        }
      }
      w.x_off = idx.size();
      for (int64_t r = 0; r < W1; ++r) {
        const int64_t pos = boundary - W1 + r;
        if (pos >= po) {
          idx.push_back(static_cast<int32_t>(row0 + pos - po));
          ++w.n_x;
        }
      }
      si.windows.push_back(w);
    }
    row0 += in.seq_lens[s];
  }
  if (idx.size() % 2 != 0) idx.push_back(0);  // 8-byte alignment for the int64 offsets
  si.off_po64 = idx.size();
  for (int64_t s = nd; s < S; ++s) {
    const int64_t v = in.prefix_offsets[s];
    int32_t words[2];
    std::memcpy(words, &v, 8);
    idx.push_back(words[0]);
    idx.push_back(words[1]);
  }
  return si;
}

StepBatch StepIndices::Bind(const int32_t* di) const {
  StepBatch b;
  b.num_tokens = num_tokens;
  b.num_decode = num_decode;
  b.num_prefill = num_prefill;
  b.token_ids = di;
  b.decode_blocks = di + off_decode;
  b.prefill_cu_seqlens = di + off_cu;
  b.prefill_initial_blocks = di + off_init;
  b.prefill_final_blocks = di + off_final;
  if (boundary_block_size > 0) {
    b.boundary_block_size = boundary_block_size;
    b.prefix_offsets32 = di + off_po32;
    b.prefix_offsets64 = reinterpret_cast<const int64_t*>(di + off_po64);
    b.ssd_boundary_offsets = di + off_ssd_off;
    b.ssd_boundary_blocks = di + off_ssd_blocks;
    b.m1_boundary_blocks = di + off_m1;
    b.m1_boundary_stride = m1_stride;
    for (const Window& w : windows) {
      b.boundary_windows.push_back({w.dst, w.init, w.n_init, di + w.init_off, w.n_x, di + w.x_off});
    }
  }
  return b;
}

}  // namespace mambaserve
