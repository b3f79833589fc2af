https://www.facebook.com/tr/?id=1&ev=ViewContent&cd[content_ids]=%5B%22LW-10452%22%5D
--referer
https://www.shop.example/p/1
--type
image
