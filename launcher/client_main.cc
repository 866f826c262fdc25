// mambaserve_client: talk to a running server.
//   mambaserve_client generate --ids 1,2,3 [--max_new_tokens 16] [--temperature 0.8 --seed 1]
//   mambaserve_client health | info | stats
//   mambaserve_client load --streams 8 --seconds 10 [--prompt_len 64] [--shared_prefix 32]
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "launcher/client.h"
#include "launcher/token_ids.h"

ABSL_FLAG(std::string, address, "127.0.0.1:50051", "server address (host:port or unix:/path)");
ABSL_FLAG(std::string, ids, "", "generate: comma-separated prompt token ids");
ABSL_FLAG(int32_t, max_new_tokens, 16, "tokens to generate per request");
ABSL_FLAG(float, temperature, 0.0f, "0 = greedy");
ABSL_FLAG(int32_t, top_k, 0, "0 = no limit");
ABSL_FLAG(float, top_p, 1.0f, "nucleus mass");
ABSL_FLAG(uint64_t, seed, 0, "sampling seed");
ABSL_FLAG(int32_t, streams, 4, "load: concurrent streams");
ABSL_FLAG(double, seconds, 10, "load: duration");
ABSL_FLAG(int32_t, prompt_len, 64, "load: prompt length");
ABSL_FLAG(int32_t, shared_prefix, 0, "load: tokens every prompt shares (prefix caching)");

namespace mambaserve {
namespace {

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * (v.size() - 1) + 0.5))];
}

api::GenerateRequest BaseRequest() {
  api::GenerateRequest req;
  req.set_max_new_tokens(absl::GetFlag(FLAGS_max_new_tokens));
  req.mutable_sampling()->set_temperature(absl::GetFlag(FLAGS_temperature));
  req.mutable_sampling()->set_top_k(absl::GetFlag(FLAGS_top_k));
  req.mutable_sampling()->set_top_p(absl::GetFlag(FLAGS_top_p));
  req.mutable_sampling()->set_seed(absl::GetFlag(FLAGS_seed));
  return req;
}

int Generate(MambaServeClient& client) {
  api::GenerateRequest req = BaseRequest();
  auto ids = ParseTokenIds(absl::GetFlag(FLAGS_ids));
  if (!ids.ok()) {
    std::fprintf(stderr, "%s\n", std::string(ids.status().message()).c_str());
    return 2;
  }
  for (int32_t id : *ids) req.add_prompt_ids(id);
  auto r = client.Generate(req);
  if (!r.ok()) {
    std::fprintf(stderr, "generate failed: %s\n", r.status().ToString().c_str());
    return 1;
  }
  std::printf("%s\n", absl::StrJoin(r->tokens, " ").c_str());
  std::fprintf(stderr, "finish_reason=%s cached_prompt_tokens=%d ttft_ms=%.2f\n",
               r->finish_reason.c_str(), r->cached_prompt_tokens,
               absl::ToDoubleMilliseconds(r->time_to_first_token));
  return 0;
}

int Load(MambaServeClient& client) {
  auto info = client.Info();
  if (!info.ok()) {
    std::fprintf(stderr, "info failed: %s\n", info.status().ToString().c_str());
    return 1;
  }
  const int64_t vocab = info->vocab_size();
  const int streams = absl::GetFlag(FLAGS_streams);
  const absl::Duration duration = absl::Seconds(absl::GetFlag(FLAGS_seconds));
  const int prompt_len = absl::GetFlag(FLAGS_prompt_len);
  const int shared = std::min(absl::GetFlag(FLAGS_shared_prefix), prompt_len);
  std::mutex mu;
  std::vector<double> ttft_ms, itl_ms;
  int64_t requests = 0, tokens = 0, errors = 0;
  const absl::Time start = absl::Now(), end = start + duration;
  std::vector<std::thread> threads;
  for (int s = 0; s < streams; ++s) {
    threads.emplace_back([&, s] {
      std::mt19937 rng(1000 + s);
      std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(vocab - 1));
      std::vector<int32_t> prefix(static_cast<size_t>(shared));
      std::mt19937 prefix_rng(7);
      for (auto& t : prefix) t = static_cast<int32_t>(prefix_rng() % vocab);
      while (absl::Now() < end) {
        api::GenerateRequest req = BaseRequest();
        for (int i = 0; i < prompt_len; ++i) req.add_prompt_ids(i < shared ? prefix[i] : tok(rng));
        auto r = client.Generate(req);
        std::lock_guard<std::mutex> lock(mu);
        if (!r.ok()) {
          ++errors;
          continue;
        }
        ++requests;
        tokens += static_cast<int64_t>(r->tokens.size());
        ttft_ms.push_back(absl::ToDoubleMilliseconds(r->time_to_first_token));
        for (auto d : r->inter_token) itl_ms.push_back(absl::ToDoubleMilliseconds(d));
      }
    });
  }
  for (auto& t : threads) t.join();
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf(
      "| streams | seconds | requests | errors | requests/s | tokens/s | TTFT p50 ms | "
      "TTFT p99 ms | ITL p50 ms | ITL p99 ms |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  std::printf("| %d | %.1f | %lld | %lld | %.2f | %.1f | %.2f | %.2f | %.2f | %.2f |\n", streams,
              secs, static_cast<long long>(requests), static_cast<long long>(errors),
              requests / secs, tokens / secs, Percentile(ttft_ms, 0.5), Percentile(ttft_ms, 0.99),
              Percentile(itl_ms, 0.5), Percentile(itl_ms, 0.99));
  return errors == 0 ? 0 : 1;
}

}  // namespace
}  // namespace mambaserve

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("mambaserve_client generate|health|info|stats|load [flags]");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) {
    std::fprintf(stderr, "usage: mambaserve_client generate|health|info|stats|load [flags]\n");
    return 2;
  }
  const std::string cmd = args[1];
  mambaserve::MambaServeClient client(absl::GetFlag(FLAGS_address));
  if (cmd == "generate") return mambaserve::Generate(client);
  if (cmd == "load") return mambaserve::Load(client);
  if (cmd == "health" || cmd == "info" || cmd == "stats") {
    std::string text;
    absl::Status st;
    if (cmd == "health") {
      auto r = client.Health();
      st = r.status();
      if (r.ok()) text = r->DebugString();
    } else if (cmd == "info") {
      auto r = client.Info();
      st = r.status();
      if (r.ok()) text = r->DebugString();
    } else {
      auto r = client.Stats();
      st = r.status();
      if (r.ok()) text = r->DebugString();
    }
    if (!st.ok()) {
      std::fprintf(stderr, "%s failed: %s\n", cmd.c_str(), st.ToString().c_str());
      return 1;
    }
    std::printf("%s", text.c_str());
    return 0;
  }
  std::fprintf(stderr, "unknown command '%s'\n", cmd.c_str());
  return 2;
}
