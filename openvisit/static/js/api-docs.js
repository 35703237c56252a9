// Starts Swagger UI on /api/docs with this deployment's schema (no inline script: the page's
// Content-Security-Policy allows only our own files).
"use strict";
(function () {
  var root = document.getElementById("swagger-ui");
  if (!root || typeof window.SwaggerUIBundle !== "function") return;
  window.SwaggerUIBundle({
    url: root.getAttribute("data-schema"),
    domNode: root,
    deepLinking: false,
    // Requests made from the page go to this origin only.
    validatorUrl: null,
  });
})();
