H
F
orders
audit.v1billing"ğíÈ±(
0€€@:€Êµî@Jorders.deadP
*
Ù