from decimal import Decimal
from typing import Any

from django import forms
from django.db import IntegrityError, transaction

from .models import Customer, Order, Organisation


class OrderStatusForm(forms.ModelForm):
    class Meta:
        model = Order
        fields = ("status",)


class NewOrderForm(forms.Form):
    """A new order for one of the user's organisations; the customer is found or created."""

    organisation = forms.ModelChoiceField(queryset=Organisation.objects.none(), empty_label=None)
    customer = forms.CharField(
        max_length=100,
        help_text="An existing customer of the organisation, or a new one.",
        widget=forms.TextInput(attrs={"list": "customers"}),
    )
    number = forms.CharField(max_length=20, help_text="Unique within the organisation.")
    total = forms.DecimalField(max_digits=10, decimal_places=2, min_value=Decimal("0.01"))

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field: Any = self.fields["organisation"]
        field.queryset = Organisation.objects.filter(members=user).order_by("name")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        organisation, number = data.get("organisation"), data.get("number")
        if organisation and number and organisation.order_set.filter(number=number).exists():
            self.add_error("number", f"{organisation} already has an order {number}.")
        return data

    def save(self) -> Order | None:
        """The new order (its save is the tracked event), or None when the number was taken
        meanwhile (the form then holds the error)."""
        data = self.cleaned_data
        try:
            with transaction.atomic():
                customer, _created = Customer.objects.get_or_create(
                    organisation=data["organisation"], name=data["customer"].strip()
                )
                return Order.objects.create(
                    organisation=data["organisation"],
                    customer=customer,
                    number=data["number"],
                    total=data["total"],
                )
        except IntegrityError:
            self.add_error(
                "number", f"{data['organisation']} already has an order {data['number']}."
            )
            return None
