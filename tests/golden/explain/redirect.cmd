http://cdn.example/js/ad-loader.js
--type
script
