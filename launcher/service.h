// The gRPC service of rank 0: Generate streams the engine's tokens; Health, Info and Stats report.
#ifndef MAMBASERVE_LAUNCHER_SERVICE_H_
#define MAMBASERVE_LAUNCHER_SERVICE_H_

#include <atomic>

#include "launcher/engine.h"
#include "launcher/mambaserve_service.grpc.pb.h"

namespace mambaserve {

class MambaServeService final : public api::MambaServe::Service {
 public:
  MambaServeService(Engine* engine, api::InfoResponse info)
      : engine_(engine), info_(std::move(info)) {}
  void set_ready(bool ready) { ready_ = ready; }

  grpc::Status Generate(grpc::ServerContext* ctx, const api::GenerateRequest* req,
                        grpc::ServerWriter<api::GenerateResponse>* writer) override;
  grpc::Status Health(grpc::ServerContext* ctx, const api::HealthRequest* req,
                      api::HealthResponse* resp) override;
  grpc::Status Info(grpc::ServerContext* ctx, const api::InfoRequest* req,
                    api::InfoResponse* resp) override;
  grpc::Status Stats(grpc::ServerContext* ctx, const api::StatsRequest* req,
                     api::StatsResponse* resp) override;

 private:
  Engine* engine_;
  api::InfoResponse info_;
  std::atomic<bool> ready_{false};
};

// absl status code -> gRPC status code (same numbering).
grpc::Status ToGrpc(const absl::Status& s);

}  // namespace mambaserve

#endif  // MAMBASERVE_LAUNCHER_SERVICE_H_
