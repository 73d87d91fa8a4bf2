// Defaults live in one place, Config's initializers. What --help says of
// each key (the key table), SubscribeOptions' initializers and
// GroupConsumerOptions' initializers must say the same: this test ties them.

#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "kafka/consumer.h"
#include "server/config.h"
#include "server/sidecar.h"
#include "server/subscribe_reactor.h"

namespace eventbus::server {
namespace {

TEST(DefaultsTest, HelpStatesTheDefaultOfEveryKey) {
  const absl::StatusOr<Config> defaults = LoadConfig({}, {});
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  const std::string help = ConfigHelp();
  const std::regex stated(R"(\n  (\S+) \(default: ([^)\n]*)\))");
  int checked = 0;
  for (auto it = std::sregex_iterator(help.begin(), help.end(), stated);
       it != std::sregex_iterator(); ++it) {
    const std::string key = (*it)[1];
    const std::string text = (*it)[2];
    // No value to set: "(none)", or a value that depends on the machine.
    if (text.empty() || text.find('<') != std::string::npos ||
        text.find('(') != std::string::npos) {
      continue;
    }
    // Setting a key to the default --help states leaves the config as it
    // was: the two agree.
    const absl::StatusOr<Config> set =
        LoadConfig({"--" + key + "=" + text}, {});
    ASSERT_TRUE(set.ok()) << key << "=" << text << ": " << set.status();
    EXPECT_TRUE(*set == *defaults)
        << "--help says " << key << " defaults to " << text
        << ", which is not Config's default";
    ++checked;
  }
  EXPECT_GE(checked, 20) << help;
}

TEST(DefaultsTest, SubscribeOptionsDefaultsAreConfigs) {
  const absl::StatusOr<Config> config = LoadConfig({}, {});
  ASSERT_TRUE(config.ok()) << config.status();
  SubscribeOptions from_config = SubscribeOptionsFor(*config);
  from_config.consumer_properties.clear();  // the brokers, not a default
  EXPECT_TRUE(from_config == SubscribeOptions())
      << "SubscribeOptions' initializers differ from Config's defaults";
}

TEST(DefaultsTest, GroupConsumerOptionsDefaultsAreSubscribeOptions) {
  v1::Subscription subscription;  // asks for nothing: the server's defaults
  subscription.add_topics("orders");
  subscription.set_group("billing");
  absl::StatusOr<kafka::GroupConsumerOptions> got =
      ToGroupConsumerOptions(subscription, SubscribeOptions());
  ASSERT_TRUE(got.ok()) << got.status();
  kafka::GroupConsumerOptions want;
  want.topics = {"orders"};
  want.group = "billing";
  EXPECT_TRUE(*got == want)
      << "GroupConsumerOptions' initializers differ from SubscribeOptions'";
}

}  // namespace
}  // namespace eventbus::server
