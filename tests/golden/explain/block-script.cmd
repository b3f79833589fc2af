http://www.ads.example/lib.js
--type
script
--referer
https://news.example/a
