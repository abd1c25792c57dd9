from django.urls import path
from shop import views

urlpatterns = [
    path("orders", views.create_order),
    path("orders-in-request", views.create_order_in_request),
]
