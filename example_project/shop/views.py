from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from . import payments
from .forms import OrderStatusForm
from .models import Order, Organisation


def _orders_of(request: HttpRequest) -> QuerySet[Order]:
    return Order.objects.filter(organisation__members=request.user).select_related(
        "organisation", "customer"
    )


@login_required
def home(request: HttpRequest) -> HttpResponse:
    organisations = Organisation.objects.filter(members=request.user)
    context = {"orders": _orders_of(request), "organisations": organisations}
    return render(request, "shop/home.html", context)


@login_required
def order_detail(request: HttpRequest, pk: int) -> HttpResponse:
    order = get_object_or_404(_orders_of(request), pk=pk)
    form = OrderStatusForm(request.POST or None, instance=order)
    if request.method == "POST" and form.is_valid():
        form.save()
        return HttpResponseRedirect(reverse("shop:order", args=[order.pk]))
    return render(request, "shop/order.html", {"order": order, "form": form})


@login_required
@require_POST
def pay(request: HttpRequest, pk: int) -> HttpResponse:
    order = get_object_or_404(_orders_of(request), pk=pk)
    payments.mark_paid(order)
    return HttpResponseRedirect(reverse("shop:order", args=[order.pk]))
