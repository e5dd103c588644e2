// With a Stripe publishable key: Stripe.js collects the card in its own frame and gives
// a token; the form posts only the token to us.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("stripe-form");
    if (!form || typeof window.Stripe !== "function") { return; }
    var stripe = window.Stripe(form.getAttribute("data-stripe-key"));
    var card = stripe.elements().create("card", { hidePostalCode: true });
    card.mount("#card-element");
    var errors = document.getElementById("card-errors");
    var button = form.querySelector("button[type=submit]");
    card.on("change", function (event) {
      errors.textContent = event.error ? event.error.message : "";
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      button.disabled = true;
      stripe.createToken(card).then(function (result) {
        if (result.error) {
          errors.textContent = result.error.message;
          button.disabled = false;
          return;
        }
        form.querySelector("input[name=token]").value = result.token.id;
        form.submit();
      });
    });
  });
})();
