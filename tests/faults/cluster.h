#pragma once

// A three-node Kafka cluster on loopback for the fault tests, started and
// controlled through deploy/kafka/kafka.sh (start-cluster, node-kill,
// node-pause, ...), and what the tests need to know of it, read with
// librdkafka's metadata: which node leads a partition, whether every
// replica is in sync.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace eventbus::testing {

class KafkaCluster {
 public:
  static constexpr int kNodes = 3;
  // Restart(kAllNodes) starts every node at once (a node waits for a
  // controller quorum before it reports started).
  static constexpr int kAllNodes = 0;

  // The cluster in `dir`: nothing runs until Start.
  explicit KafkaCluster(std::string dir);
  KafkaCluster(const KafkaCluster&) = delete;
  KafkaCluster& operator=(const KafkaCluster&) = delete;
  // Stops every node.
  ~KafkaCluster();

  // kafka.sh start-cluster: a fresh cluster; fails with the script's output
  // (the reason and the nodes' log tails) when it does not start.
  absl::Status Start();
  // Every node, SIGKILLed at once: the cluster is thrown away afterwards,
  // and a controlled shutdown of three nodes took 6.5 s per test. Their
  // logs stay.
  void Stop();
  // "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3" once started.
  const std::string& brokers() const { return brokers_; }

  // Single nodes (1..kNodes), as a fault test needs them: SIGKILL, SIGTERM,
  // SIGSTOP, SIGCONT, and a restart on the same data and ports (which
  // returns once the node logged it started).
  absl::Status Kill(int node);
  absl::Status StopNode(int node);
  absl::Status Pause(int node);
  absl::Status Resume(int node);
  absl::Status Restart(int node);

  // The node leading `topic`'s `partition`, per a live node's metadata, or
  // -1 when none does (or no node answers).
  int Leader(const std::string& topic, int32_t partition) const;
  // Waits until every partition of `topic` has a leader and all kNodes
  // replicas in sync.
  absl::Status WaitInSync(const std::string& topic, absl::Duration timeout) const;
  // Creates `topic` (replication factor 3) and waits until it is in sync.
  absl::Status CreateTopic(const std::string& topic, int partitions) const;

  // The last `lines` lines of each node's log, for failures.
  std::string LogTails(int lines) const;

 private:
  // Runs deploy/kafka/kafka.sh with `args`; returns its exit code and puts
  // its stdout and stderr in `output`.
  int RunScript(const std::vector<std::string>& args, std::string* output) const;
  absl::Status NodeCommand(const std::string& command, int node);
  // NodeCommand on every node at once; the first failure.
  absl::Status OnEveryNode(const std::string& command);

  const std::string dir_;
  std::string brokers_;
  bool started_ = false;
};

}  // namespace eventbus::testing
