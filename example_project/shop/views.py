from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from django_datadog_partner.models import Connection

from . import payments
from .forms import NewOrderForm, OrderStatusForm
from .models import Customer, Order, Organisation


def _orders_of(request: HttpRequest) -> QuerySet[Order]:
    return Order.objects.filter(organisation__members=request.user).select_related(
        "organisation", "customer"
    )


def _tell(request: HttpRequest, order: Order, done: str, sent: str) -> None:
    """Say what changed and where Datadog's copy goes (nowhere without a live connection)."""
    organisation = order.organisation
    if Connection.objects.owned_by(organisation).active().exists():
        messages.success(request, f"{done} {organisation}'s Datadog receives {sent}.")
    else:
        messages.warning(
            request,
            f"{done} {organisation} has no active Datadog connection, so Datadog receives "
            "nothing: connect one under Datadog connections.",
        )


@login_required
def home(request: HttpRequest) -> HttpResponse:
    organisations = Organisation.objects.filter(members=request.user)
    context = {"orders": _orders_of(request), "organisations": organisations}
    return render(request, "shop/home.html", context)


@login_required
def new_order(request: HttpRequest) -> HttpResponse:
    form = NewOrderForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        order = form.save()
        if order is not None:
            done = f"{order} created for {order.customer} ({order.total})."
            _tell(request, order, done, "an event")
            return HttpResponseRedirect(reverse("shop:order", args=[order.pk]))
    customers = Customer.objects.filter(organisation__members=request.user).order_by("name")
    context = {"form": form, "customers": customers.values_list("name", flat=True).distinct()}
    return render(request, "shop/new_order.html", context, status=400 if form.errors else 200)


@login_required
def order_detail(request: HttpRequest, pk: int) -> HttpResponse:
    order = get_object_or_404(_orders_of(request), pk=pk)
    form = OrderStatusForm(request.POST or None, instance=order)
    if request.method == "POST" and form.is_valid():
        form.save()
        _tell(request, order, f"{order} is now {order.get_status_display()}.", "an event")
        return HttpResponseRedirect(reverse("shop:order", args=[order.pk]))
    return render(request, "shop/order.html", {"order": order, "form": form})


@login_required
@require_POST
def pay(request: HttpRequest, pk: int) -> HttpResponse:
    order = get_object_or_404(_orders_of(request), pk=pk)
    if order.status != Order.Status.NEW:
        messages.info(request, f"{order} is {order.get_status_display()}: no payment taken.")
    else:
        payments.mark_paid(order)
        done = f"Payment of {order.total} taken: {order} is now Paid."
        sent = f"an event, the metric {payments.AMOUNT_METRIC} and a log"
        _tell(request, order, done, sent)
    return HttpResponseRedirect(reverse("shop:order", args=[order.pk]))
