http://ads.example/consent/tracker
--type
image
