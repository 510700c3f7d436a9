import java.io.*;
import java.nio.file.*;

/** A JVM admin tool: `java DataStats FILE` reads a data file and prints its size and checksum
 *  (read-only); `java DataStats FILE --repair` "repairs" it by rewriting it in place. */
public class DataStats {
    public static void main(String[] args) throws IOException {
        Path file = Paths.get(args[0]);
        byte[] bytes = Files.readAllBytes(file);
        long sum = 0;
        for (byte b : bytes) sum = (sum * 31 + (b & 0xff)) % 1_000_000_007L;
        System.out.println(file + ": " + bytes.length + " bytes, checksum " + sum);
        if (args.length > 1 && args[1].equals("--repair")) {
            try (OutputStream out = new FileOutputStream(file.toFile())) {
                out.write(bytes, 0, bytes.length / 2);
            }
            System.out.println("repaired " + file);
        }
    }
}
