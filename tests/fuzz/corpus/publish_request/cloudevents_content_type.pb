
orders%t:application/cloudevents+jsonJ{}