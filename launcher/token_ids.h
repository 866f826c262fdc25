// Parsing "1,2,3" token-id lists given on a command line (client and generate tools).
#ifndef MAMBASERVE_LAUNCHER_TOKEN_IDS_H_
#define MAMBASERVE_LAUNCHER_TOKEN_IDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace mambaserve {

inline absl::StatusOr<std::vector<int32_t>> ParseTokenIds(const std::string& text) {
  std::vector<int32_t> ids;
  for (absl::string_view s : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int32_t id;
    if (!absl::SimpleAtoi(s, &id)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--ids: '", std::string(s), "' is not an integer"));
    }
    ids.push_back(id);
  }
  return ids;
}

}  // namespace mambaserve

#endif  // MAMBASERVE_LAUNCHER_TOKEN_IDS_H_
