from django.urls import path

from playground.views import playground_page

app_name = "playground"

urlpatterns = [
    path("", playground_page, name="page"),
]
