#include "kafka/rdkafka_stats.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "common/json_text.h"

namespace eventbus::kafka {
namespace {

using ::eventbus::common::JsonMember;
using ::eventbus::common::SplitJsonObject;
using ::eventbus::common::UnescapeJsonString;

// The members of a JSON object, or none when `text` is not one.
std::vector<JsonMember> Members(absl::string_view text) {
  std::vector<JsonMember> members;
  if (!SplitJsonObject(text, &members)) members.clear();
  return members;
}

bool ReadInt(absl::string_view text, int64_t* out) {
  return absl::SimpleAtoi(text, out);
}

bool ReadDouble(absl::string_view text, double* out) {
  return absl::SimpleAtod(text, out);
}

BrokerStats ReadBroker(absl::string_view text) {
  BrokerStats b;
  for (const JsonMember& m : Members(text)) {
    int64_t n = 0;
    if (m.name == "nodename") {
      UnescapeJsonString(m.value, &b.name);
    } else if (m.name == "nodeid" && ReadInt(m.value, &n)) {
      b.node_id = static_cast<int32_t>(n);
    } else if (m.name == "state") {
      std::string state;
      b.up = UnescapeJsonString(m.value, &state) && state == "UP";
    } else if (m.name == "outbuf_cnt") {
      ReadInt(m.value, &b.outbuf_requests);
    } else if (m.name == "waitresp_cnt") {
      ReadInt(m.value, &b.waitresp_requests);
    } else if (m.name == "txretries") {
      ReadInt(m.value, &b.retries);
    } else if (m.name == "req_timeouts") {
      ReadInt(m.value, &b.timeouts);
    } else if (m.name == "disconnects") {
      ReadInt(m.value, &b.disconnects);
    } else if (m.name == "rtt") {
      // Microseconds.
      for (const JsonMember& r : Members(m.value)) {
        double us = 0;
        if (r.name == "avg" && ReadDouble(r.value, &us)) {
          b.rtt_avg_seconds = us / 1e6;
        } else if (r.name == "p99" && ReadDouble(r.value, &us)) {
          b.rtt_p99_seconds = us / 1e6;
        }
      }
    }
  }
  return b;
}

void ReadTopic(absl::string_view topic_name, absl::string_view text,
               std::vector<PartitionLag>* out) {
  for (const JsonMember& m : Members(text)) {
    if (m.name != "partitions") continue;
    for (const JsonMember& p : Members(m.value)) {
      int64_t partition = -1, lag = -1;
      bool desired = false;
      for (const JsonMember& f : Members(p.value)) {
        if (f.name == "partition") {
          ReadInt(f.value, &partition);
        } else if (f.name == "consumer_lag") {
          ReadInt(f.value, &lag);
        } else if (f.name == "desired") {
          desired = f.value == "true";
        }
      }
      // -1: the internal unassigned partition, or a lag not known yet. A
      // partition that is not "desired" is no longer assigned to this
      // consumer (revoked or lost): its figures are stale, and the member
      // that has it now reports it.
      if (partition >= 0 && lag >= 0 && desired) {
        out->push_back(
            {std::string(topic_name), static_cast<int32_t>(partition), lag});
      }
    }
  }
}

}  // namespace

absl::StatusOr<RdKafkaStats> ParseRdKafkaStats(absl::string_view json) {
  std::vector<JsonMember> top;
  if (!SplitJsonObject(json, &top)) {
    return absl::InvalidArgumentError(
        "librdkafka statistics are not a JSON object");
  }
  RdKafkaStats stats;
  for (const JsonMember& m : top) {
    if (m.name == "brokers") {
      for (const JsonMember& b : Members(m.value)) {
        BrokerStats broker = ReadBroker(b.value);
        if (broker.node_id >= 0) stats.brokers.push_back(std::move(broker));
      }
    } else if (m.name == "topics") {
      for (const JsonMember& t : Members(m.value)) {
        ReadTopic(t.name, t.value, &stats.lags);
      }
    }
  }
  return stats;
}

}  // namespace eventbus::kafka
