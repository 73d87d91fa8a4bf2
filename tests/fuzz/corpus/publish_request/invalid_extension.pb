
orderstR
Bad-Namex