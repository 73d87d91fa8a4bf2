#pragma once

// An EventBus service on a free loopback port, and a stub that calls it: the
// gRPC layer's unit tests run the real server code over a fake Kafka.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "eventbus/v1/eventbus.grpc.pb.h"

namespace eventbus::fakes {

struct LoopbackServer {
  std::unique_ptr<grpc::Server> server;  // null when it did not start
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::EventBus::Stub> stub;
};

inline LoopbackServer StartLoopbackServer(grpc::Service* service) {
  LoopbackServer out;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(service);
  out.server = builder.BuildAndStart();
  if (out.server == nullptr || port <= 0) return LoopbackServer{};
  out.channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                    grpc::InsecureChannelCredentials());
  out.stub = v1::EventBus::NewStub(out.channel);
  return out;
}

}  // namespace eventbus::fakes
