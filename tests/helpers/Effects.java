// The JVM program of trace_jvm.rs: writes a file from the main thread, then connects to a
// loopback TCP listener and sends a greeting from a thread of its own.
//
// Usage: java -cp DIR Effects OUT_FILE PORT
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

public class Effects {
    public static void main(String[] args) throws Exception {
        Path out = Path.of(args[0]);
        int port = Integer.parseInt(args[1]);
        Files.writeString(out, "written by the jvm\n", StandardCharsets.UTF_8);
        Thread connector = new Thread(() -> {
            try (Socket s = new Socket("127.0.0.1", port)) {
                OutputStream os = s.getOutputStream();
                os.write("hello from a thread".getBytes(StandardCharsets.UTF_8));
                os.flush();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }, "pilot-connector");
        connector.start();
        connector.join();
        System.out.println("done");
    }
}
