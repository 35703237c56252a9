document.getElementById("authorize")?.submit();
