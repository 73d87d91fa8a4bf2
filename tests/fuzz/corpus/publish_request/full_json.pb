
	orders.v1order-42ß
e1//orders/eu-1com.example.order.created"1.0*	orders/422ðíÈ±ÀÞœø:application/json; charset=utf-8Bhttps://example.com/order.jsonJ,{"order":42,"items":["a","b"],"total":1.5e2}R
tenantacmeR
partitionkeyp1"c1