#include "tests/faults/cluster.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <sys/wait.h>

#include <array>
#include <iostream>
#include <map>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "kafka/rdkafka_handles.h"

namespace eventbus::testing {
namespace {

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// A client of the cluster at `brokers` for metadata and admin calls.
kafka::RdKafkaPtr NewClient(const std::string& brokers) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char errstr[512];
  const std::map<std::string, std::string> props = {
      {"bootstrap.servers", brokers},
      {"log_level", "0"},
      {"socket.timeout.ms", "3000"},
  };
  for (const auto& [k, v] : props) {
    rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof(errstr));
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (rk == nullptr) rd_kafka_conf_destroy(conf);
  return kafka::RdKafkaPtr(rk);
}

// The partitions of `topic` from a fresh client's metadata.
struct PartitionInfo {
  int32_t leader = -1;
  int replicas = 0;
  int in_sync = 0;
};
absl::Status TopicPartitions(const std::string& brokers, const std::string& topic,
                             std::vector<PartitionInfo>* out) {
  kafka::RdKafkaPtr rk = NewClient(brokers);
  if (rk == nullptr) return absl::InternalError("cannot create a Kafka client");
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk.get(), topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk.get(), 0, rkt, &md, 5000);
  rd_kafka_topic_destroy(rkt);
  kafka::RdKafkaMetadataPtr owned(md);
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1) err = md->topics[0].err;
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::UnavailableError(
        absl::StrCat("metadata of ", topic, ": ", rd_kafka_err2str(err)));
  }
  out->clear();
  for (int p = 0; p < md->topics[0].partition_cnt; ++p) {
    const rd_kafka_metadata_partition_t& mp = md->topics[0].partitions[p];
    if (mp.id >= static_cast<int32_t>(out->size())) out->resize(mp.id + 1);
    (*out)[mp.id] = {mp.leader, mp.replica_cnt, mp.isr_cnt};
  }
  return absl::OkStatus();
}

}  // namespace

KafkaCluster::KafkaCluster(std::string dir) : dir_(std::move(dir)) {}

KafkaCluster::~KafkaCluster() { Stop(); }

int KafkaCluster::RunScript(const std::vector<std::string>& args,
                            std::string* output) const {
  std::string cmd = ShellQuote(absl::StrCat(EVENTBUS_SOURCE_DIR, "/deploy/kafka/kafka.sh"));
  for (const std::string& a : args) absl::StrAppend(&cmd, " ", ShellQuote(a));
  absl::StrAppend(&cmd, " 2>&1");
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) {
    *output = "popen failed";
    return -1;
  }
  output->clear();
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) output->append(buf.data(), n);
  const int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

absl::Status KafkaCluster::Start() {
  std::string output;
  const absl::Time t0 = absl::Now();
  const int rc = RunScript({"start-cluster", dir_}, &output);
  started_ = true;  // stop whatever did start, even after a failure
  if (rc != 0) {
    return absl::UnavailableError(absl::StrCat(
        "kafka.sh start-cluster ", dir_, " failed (exit ", rc, "):\n", output));
  }
  // The last line is the bootstrap list.
  absl::string_view out = absl::StripTrailingAsciiWhitespace(output);
  const size_t nl = out.rfind('\n');
  brokers_ = std::string(nl == absl::string_view::npos ? out : out.substr(nl + 1));
  std::cerr << "fault suite: three-node Kafka at " << brokers_ << " started in "
            << absl::FormatDuration(absl::Trunc(absl::Now() - t0, absl::Milliseconds(100)))
            << "\n";
  return absl::OkStatus();
}

void KafkaCluster::Stop() {
  if (!started_) return;
  started_ = false;
  if (absl::Status s = OnEveryNode("node-kill"); !s.ok()) std::cerr << s << "\n";
  // Clears what is left: the bootstrap file, a node the kill missed.
  std::string output;
  if (RunScript({"stop", dir_}, &output) != 0) std::cerr << output;
}

absl::Status KafkaCluster::NodeCommand(const std::string& command, int node) {
  std::string output;
  const int rc = RunScript({command, dir_, absl::StrCat(node)}, &output);
  std::cerr << absl::FormatTime("%H:%M:%E3S ", absl::Now(), absl::UTCTimeZone())
            << "kafka.sh " << command << " " << node << "\n";
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("kafka.sh ", command, " ", node, " failed (exit ", rc, "):\n", output));
  }
  return absl::OkStatus();
}

absl::Status KafkaCluster::Kill(int node) { return NodeCommand("node-kill", node); }
absl::Status KafkaCluster::StopNode(int node) { return NodeCommand("node-stop", node); }
absl::Status KafkaCluster::Pause(int node) { return NodeCommand("node-pause", node); }
absl::Status KafkaCluster::Resume(int node) { return NodeCommand("node-resume", node); }
absl::Status KafkaCluster::Restart(int node) {
  if (node != kAllNodes) return NodeCommand("node-start", node);
  return OnEveryNode("node-start");
}

absl::Status KafkaCluster::OnEveryNode(const std::string& command) {
  std::vector<absl::Status> results(kNodes);
  std::vector<std::thread> threads;
  for (int n = 1; n <= kNodes; ++n) {
    threads.emplace_back(
        [this, n, &command, &results] { results[n - 1] = NodeCommand(command, n); });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : results) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

int KafkaCluster::Leader(const std::string& topic, int32_t partition) const {
  std::vector<PartitionInfo> parts;
  if (!TopicPartitions(brokers_, topic, &parts).ok()) return -1;
  if (partition < 0 || partition >= static_cast<int32_t>(parts.size())) return -1;
  return parts[partition].leader;
}

absl::Status KafkaCluster::WaitInSync(const std::string& topic,
                                      absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  std::string why;
  while (true) {
    std::vector<PartitionInfo> parts;
    absl::Status s = TopicPartitions(brokers_, topic, &parts);
    if (s.ok()) {
      why.clear();
      for (size_t p = 0; p < parts.size(); ++p) {
        if (parts[p].leader < 0 || parts[p].in_sync < kNodes) {
          absl::StrAppend(&why, " partition ", p, ": leader ", parts[p].leader,
                          ", ", parts[p].in_sync, " of ", parts[p].replicas,
                          " replicas in sync;");
        }
      }
      if (why.empty() && !parts.empty()) return absl::OkStatus();
    } else {
      why = std::string(s.message());
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(topic, " not in sync after ", absl::FormatDuration(timeout),
                       ":", why));
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
}

absl::Status KafkaCluster::CreateTopic(const std::string& topic, int partitions) const {
  kafka::RdKafkaPtr rk = NewClient(brokers_);
  if (rk == nullptr) return absl::InternalError("cannot create a Kafka client");
  char errstr[512];
  rd_kafka_NewTopic_t* nt =
      rd_kafka_NewTopic_new(topic.c_str(), partitions, kNodes, errstr, sizeof(errstr));
  if (nt == nullptr) return absl::InvalidArgumentError(errstr);
  kafka::RdKafkaQueuePtr q(rd_kafka_queue_new(rk.get()));
  rd_kafka_CreateTopics(rk.get(), &nt, 1, nullptr, q.get());
  kafka::RdKafkaEventPtr ev(rd_kafka_queue_poll(q.get(), 30000));
  rd_kafka_NewTopic_destroy(nt);
  if (ev == nullptr) return absl::DeadlineExceededError("CreateTopics timed out");
  size_t n = 0;
  const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(
      rd_kafka_event_CreateTopics_result(ev.get()), &n);
  if (n != 1 || rd_kafka_topic_result_error(results[0]) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::InternalError(absl::StrCat(
        "CreateTopics ", topic, ": ",
        n == 1 ? rd_kafka_topic_result_error_string(results[0]) : "no result"));
  }
  return WaitInSync(topic, absl::Seconds(60));
}

std::string KafkaCluster::LogTails(int lines) const {
  std::string output;
  RunScript({"logtail", dir_, absl::StrCat(lines)}, &output);
  return output;
}

}  // namespace eventbus::testing
