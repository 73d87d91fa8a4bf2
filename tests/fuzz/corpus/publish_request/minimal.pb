
orderscom.example.order.created