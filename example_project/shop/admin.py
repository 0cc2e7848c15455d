from django.contrib import admin

from .models import Customer, Order, Organisation


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    list_display = ("name",)
    filter_horizontal = ("members",)


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("name", "organisation", "email")


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("number", "organisation", "customer", "status", "total", "updated_at")
    list_filter = ("status", "organisation")
