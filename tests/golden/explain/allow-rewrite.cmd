http://ads.example/consent/ok?utm_source=x&v=1
--referer
https://www.ads.example/
